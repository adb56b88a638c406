"""The principals a signed-in user may act as: one per role the decision store gives them.

The web app's sessions and the API's tokens both name a user; what that user may see is
what their roles allow (:mod:`pbc.services.permissions`), exactly as on the command line.
"""

from __future__ import annotations

from sqlalchemy import select

from pbc.decisions import DecisionStore
from pbc.decisions.people import User, UserRole
from pbc.services.principal import Principal

#: the source of a principal whose user signed in to the web app
WEB_SESSION = "web session (password checked)"
#: the source of a principal presenting an API token
API_TOKEN = "API bearer token"


def principals_for(store: DecisionStore, user_name: str, *, source: str) -> list[Principal]:
    """Every role the user holds, as authenticated principals (empty: no such user, or a
    user with no role), in a stable order (role, organisation)."""
    with store._session() as s:
        rows = s.execute(select(UserRole.role, UserRole.organisation).join(User).where(
            User.name == user_name).order_by(UserRole.role, UserRole.organisation)).all()
    return [Principal(user_name, str(role), str(org), authenticated=True,  # type: ignore[arg-type]
                      source=source) for role, org in rows]
