"""The webhook service: customer endpoints, Standard Webhooks signed delivery with retries, attempt log."""
