"""The running deployment, however it is deployed: its containers or tasks, exec into them, the Tempo API."""
