"""Reporting to NCMEC's CyberTipline: documents, the API client, and the resumable filing job."""
