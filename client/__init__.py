"""The Python client of Le Stats Sportif (aiohttp only): see client.http."""

from client.http import Answer, Client, ClientError, JobFailed, SyncClient

__all__ = ["Answer", "Client", "ClientError", "JobFailed", "SyncClient"]
