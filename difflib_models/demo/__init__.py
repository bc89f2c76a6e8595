"""The end-to-end demo: fine-tune the embedded model with the callbacks attached, diff it, gate it."""
