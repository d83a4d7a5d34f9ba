"""Operations on a running deployment or a registry: the Compose project, secret stores, image pinning."""
