"""SIP settings (listen addresses, codecs, routes, accounts) - filled in by the SIP ingest issue."""
