"""Process settings: where Numerai's API lives, where data is cached, and the API keys."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

NUMERAI_API_URL = "https://api-tournament.numer.ai"
YAHOO_FINANCE_URL = "https://finance.yahoo.com"


class NodesSettings(BaseSettings):
    """Settings read from the environment (and a `.env` file) when a node starts."""

    model_config = SettingsConfigDict(env_prefix="NUMERAI_NODES_", env_file=".env", extra="ignore")

    api_url: str = Field(
        NUMERAI_API_URL,
        description="Numerai's GraphQL endpoint.",
        validation_alias=AliasChoices("NUMERAI_API_URL", "NUMERAI_NODES_API_URL"),
    )
    home: Path = Field(
        Path(".numerai-nodes"),
        description="Working directory for downloaded data, predictions and the local stack.",
    )
    public_id: SecretStr | None = Field(
        None,
        description="Numerai API public id.",
        validation_alias=AliasChoices("NUMERAI_PUBLIC_ID", "NUMERAI_NODES_PUBLIC_ID"),
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Numerai API secret key.",
        validation_alias=AliasChoices("NUMERAI_SECRET_KEY", "NUMERAI_NODES_SECRET_KEY"),
    )
    public_id_block: str = Field(
        "numerai-public-id", description="Prefect Secret block holding the public id."
    )
    secret_key_block: str = Field(
        "numerai-secret-key", description="Prefect Secret block holding the secret key."
    )
    show_progress: bool = Field(
        False, description="Show download progress bars (the CLI turns this on in a terminal)."
    )
    yahoo_url: str | None = Field(
        None,
        description="Base URL that Signals nodes send yfinance's Yahoo Finance requests to "
        "(env NUMERAI_NODES_YAHOO_URL); unset means the real Yahoo Finance.",
    )

    @property
    def data_dir(self) -> Path:
        """Data cache of this API: data from different APIs never mixes."""
        return self.home / "data" / source_label(self.api_url)

    @property
    def prices_dir(self) -> Path:
        """Daily price cache of the price source: prices from different sources never mix."""
        return self.home / "prices" / source_label(self.yahoo_url or YAHOO_FINANCE_URL)


def source_label(api_url: str) -> str:
    """A file-system-safe name for an API, e.g. `api-tournament.numer.ai` or `127.0.0.1_8000`."""
    parts = urlsplit(api_url)
    return (parts.netloc or parts.path).replace(":", "_").replace("/", "_") or "default"


def load_settings() -> NodesSettings:
    """Read the settings now, never at import time."""
    return NodesSettings()
