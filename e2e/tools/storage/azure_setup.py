"""Creates the container `probe` in a fresh Azurite, for tests/storage.rs.

Usage: azure_setup.py ACCOUNT_URL ACCOUNT KEY     (ACCOUNT_URL: http://127.0.0.1:PORT/ACCOUNT)
"""
import sys

from azure.storage.blob import BlobServiceClient

account_url, account, key = sys.argv[1:4]
service = BlobServiceClient(
    account_url=account_url,
    credential={"account_name": account, "account_key": key},
)
service.create_container("probe")
