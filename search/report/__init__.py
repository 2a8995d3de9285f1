"""What a campaign found and where it stands: `status`, the report's data, its rendering and its plots."""
