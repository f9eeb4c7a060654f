"""Signed tokens and the open / click / unsubscribe endpoints (SPEC D2)."""
