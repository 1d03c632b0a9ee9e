"""The exactly-once payout engine: state machine, campaigns, runner, tracker."""
