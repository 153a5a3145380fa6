"""The SSRF rule of every URL we call on a customer's behalf (webhooks, input images)."""
