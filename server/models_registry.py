"""Imports the models of every domain package so ``Base.metadata`` is complete (Alembic, tests)."""

import cases.models  # noqa: F401
import cases.notifications  # noqa: F401
import esign.models  # noqa: F401
import evidence.models  # noqa: F401
import notes.models  # noqa: F401
import recordings.models  # noqa: F401
import rooms.models  # noqa: F401
