# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options of one virtual key (module_utils/key_options.py KEY_OPTIONS_ARGSPEC).
    DOCUMENTATION = r"""
options:
  models:
    description:
      - Model names (or access groups, or wildcards such as C(openai/*)) the key may use. An empty list means all models.
      - Names that the proxy does not serve are refused before anything is changed.
      - Compared as a set.
    type: list
    elements: str
  max_budget:
    description:
      - Spend limit of the key in USD. Must not be negative.
    type: float
  budget_duration:
    description:
      - Period after which the key's spend is reset, as C(<number><unit>) with unit C(s), C(m), C(h), C(d), C(w) or C(mo)
        (for example C(1d), C(7d), C(1mo)), or one of the portal's periods C(daily), C(weekly), C(monthly), C(yearly).
      - Sent and stored as given. Resets are calendar-aligned in the proxy's budget time zone (UTC by default)
        at midnight, on Monday, on the 1st of the month or on 1 January.
      - Compared by meaning, so C(monthly) and C(1mo) are the same period and do not cause a change.
    type: str
  tpm_limit:
    description:
      - Tokens per minute allowed for the key.
    type: int
  rpm_limit:
    description:
      - Requests per minute allowed for the key.
    type: int
  max_parallel_requests:
    description:
      - Requests the key may have in flight at once.
    type: int
  duration:
    description:
      - Lifetime of a new key, as C(<number><unit>) with unit C(s), C(m), C(h), C(d), C(w) or C(mo) (for example C(30d)),
        or C(daily), C(weekly), C(monthly), C(yearly) (one day, week, calendar month or calendar year).
      - Applied only when the key is created. The proxy counts a duration from the time of the call, so sending it
        on every run would push the expiry out each time; to change the expiry of an existing key use O(expires).
      - Mutually exclusive with O(expires).
    type: str
  expires:
    description:
      - Absolute expiry time in ISO 8601 (for example C(2026-12-31T18:00:00Z)), or C(never).
      - Compared with the stored expiry (within two minutes); when different, the key is updated.
      - Mutually exclusive with O(duration).
    type: str
  user_id:
    description:
      - Owner of the key on the proxy (a portal user id, or any identifier).
    type: str
  team_id:
    description:
      - Team of the key. The team must exist on the proxy.
    type: str
  metadata:
    description:
      - Free-form metadata. Only the given entries are compared and written; other entries already on the key are kept.
    type: dict
  blocked:
    description:
      - Whether the key is blocked (requests with it are refused).
    type: bool
"""
