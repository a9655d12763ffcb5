"""Process settings: where Numerai's API lives, where data is cached, and the API keys."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

NUMERAI_API_URL = "https://api-tournament.numer.ai"
YAHOO_FINANCE_URL = "https://finance.yahoo.com"
ENV_PREFIX = "NUMERAI_NODES_"
# The environment variables a node reads its Numerai API and keys from (numerai-cli's names).
API_URL_ENV = "NUMERAI_API_URL"
PUBLIC_ID_ENV = "NUMERAI_PUBLIC_ID"
SECRET_KEY_ENV = "NUMERAI_SECRET_KEY"
KEY_ENV = (PUBLIC_ID_ENV, SECRET_KEY_ENV)
YAHOO_URL_ENV = f"{ENV_PREFIX}YAHOO_URL"
HOME_ENV = f"{ENV_PREFIX}HOME"
KEY_VAULT_URL_ENV = f"{ENV_PREFIX}KEY_VAULT_URL"


class HomeSettings(BaseSettings):
    """The project's working directory, which every settings class of the project shares."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    home: Path = Field(
        Path(".numerai-nodes"),
        description="Working directory for downloaded data, predictions, the local stack and "
        "any other runtime state (Terraform's too); never inside the source tree.",
    )


class NodesSettings(HomeSettings):
    """Settings read from the environment (and a `.env` file) when a node starts."""

    api_url: str = Field(
        NUMERAI_API_URL,
        description="Numerai's GraphQL endpoint.",
        validation_alias=AliasChoices(API_URL_ENV, f"{ENV_PREFIX}API_URL"),
    )
    public_id: SecretStr | None = Field(
        None,
        description="Numerai API public id.",
        validation_alias=AliasChoices(PUBLIC_ID_ENV, f"{ENV_PREFIX}PUBLIC_ID"),
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Numerai API secret key.",
        validation_alias=AliasChoices(SECRET_KEY_ENV, f"{ENV_PREFIX}SECRET_KEY"),
    )
    key_vault_url: str | None = Field(
        None,
        description="Azure Key Vault holding the keys as secrets `numerai-public-id` and "
        "`numerai-secret-key`, e.g. `https://<vault>.vault.azure.net/` (env "
        "NUMERAI_NODES_KEY_VAULT_URL; the Azure pool sets it). Read with the Azure identity of "
        "the process, after the environment's keys and before the Prefect Secret blocks.",
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
    max_retries: int = Field(
        200,
        ge=0,
        description="The most retries of one task; the round's close usually ends them first.",
    )
    max_restarts: int = Field(
        3,
        ge=0,
        description="How many times a node run that crashed (killed, out of memory) may be "
        "started again; a run started more often fails at once, naming the likely cause.",
    )
    request_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="How long one call to Numerai or its file storage may wait for an answer "
        "(per read): a hung peer then costs a retry, not the round.",
    )
    connect_timeout_seconds: float = Field(
        10.0, gt=0, description="How long connecting to Numerai may take."
    )
    lock_timeout_seconds: float = Field(
        1800.0,
        gt=0,
        description="How long a node waits for another node that fetches the same cached file "
        "or submits for the same model.",
    )
    compute_id: str | None = Field(
        None,
        description="Numerai compute id sent with each upload (numerapi's NUMERAI_COMPUTE_ID).",
        validation_alias=AliasChoices("NUMERAI_COMPUTE_ID", f"{ENV_PREFIX}COMPUTE_ID"),
    )
    retry_delay_scale: float = Field(
        1.0,
        ge=0,
        description="Multiplies the tasks' retry delays when a retry happens (0 retries at once).",
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


def node_env(
    api_url: str, public_id: str, secret_key: str, yahoo_url: str | None = None
) -> dict[str, str]:
    """The environment that points a node at a Numerai API (and a price source) with keys."""
    env = {API_URL_ENV: api_url, PUBLIC_ID_ENV: public_id, SECRET_KEY_ENV: secret_key}
    if yahoo_url:
        env[YAHOO_URL_ENV] = yahoo_url
    return env


def load_settings() -> NodesSettings:
    """Read the settings now, never at import time."""
    return NodesSettings()
