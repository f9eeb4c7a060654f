"""Contacts in and out as CSV files: streaming, batched, and safe to open in a spreadsheet."""
