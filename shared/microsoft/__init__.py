"""Clients of Microsoft's APIs: Entra ID tokens, the Defender alerts API and its streamed pages."""
