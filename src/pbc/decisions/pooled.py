"""The register of Section 75 pooled budget agreements in the decision store.

An agreement is recorded (``pbc la register --add FILE``) by one of its partners: the file
as written, its validated content and its SHA-256, its partners' codes (so access can be
decided without reading the content) and a ``version`` that counts its changes. Recording a
changed file under the same reference makes a new version (the audit row holds the hashes
before and after); recording the same file again changes nothing. The pure model and the
settlement are in :mod:`pbc.local_authorities.pooled`.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pbc.decisions.models import Base, utcnow
from pbc.local_authorities.pooled import Agreement


class PooledAgreementRecord(Base):
    """One pooled budget agreement (its latest version); ``reference`` is unique."""

    __tablename__ = "pooled_agreements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(40), unique=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    host_code: Mapped[str] = mapped_column(String(20))
    commissioner_code: Mapped[str] = mapped_column(String(20), index=True)
    local_authority_code: Mapped[str] = mapped_column(String(20), index=True)
    group_code: Mapped[str | None] = mapped_column(String(20), nullable=True)
    agreement_file: Mapped[str] = mapped_column(Text)  # the TOML as the partners wrote it
    content: Mapped[str] = mapped_column(Text)  # JSON: the validated Agreement
    sha256: Mapped[str] = mapped_column(String(64))
    recorded_by: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    def agreement(self) -> Agreement:
        return Agreement.model_validate_json(self.content)

    def state(self) -> dict[str, object]:
        """What an audit row records as the agreement's before / after."""
        return {"version": self.version, "sha256": self.sha256, "name": self.name}
