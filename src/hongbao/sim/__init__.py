"""A stateful simulator of the WeChat Pay red packet API (imports only wire/ and pure modules)."""
