"""Signing, safe XML and HTTP transports: the wire layer (knows nothing of red packets)."""
