"""Every ORM model: importing this module puts every table in ``app.db.Base.metadata``.

Models name the tables of their foreign keys (``ForeignKey("users.id")``) instead of importing
other domains' models, so writing a row needs the tables it points to loaded: whatever writes
rows or needs all tables imports this registry (the web process's ``app.main``, the
dispatcher's jobs, ``migrations/env.py``, tests that write in process).
"""

from __future__ import annotations

from app.auth import models as auth_models
from app.chat import models as chat_models
from app.db import Base
from app.families import models as family_models
from app.karma import models as karma_models
from app.push import models as push_models
from app.realtime import models as realtime_models
from app.recurring import models as recurring_models
from app.rewards import models as reward_models
from app.tasks import models as task_models

MODEL_MODULES = (
    family_models,
    auth_models,
    task_models,
    recurring_models,
    karma_models,
    reward_models,
    chat_models,
    push_models,
    realtime_models,
)

metadata = Base.metadata
