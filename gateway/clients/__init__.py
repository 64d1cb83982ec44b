"""One module per external API; no SQL, no arq."""
