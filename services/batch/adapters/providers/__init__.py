"""Video provider adapters; each implements `services.batch.domain.provider.VideoProvider`."""
