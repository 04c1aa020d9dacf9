"""Learning profiles: the project's own history choosing agents and models, and forecasting runs.

Every finished stage attempt becomes a sample (``tap``: agent, task type, model, verdict,
tokens, dollars, time); ``updater`` keeps them, and their summary per agent x task type x model,
in the profile tables as attempts finish, and can rebuild both from the runs' logs. ``scoring``
is the ranking formula, ``explore`` the bounded exploration of cheaper models, ``choose`` and
``chooser`` the decisions recorded on ``attempt_started``, ``forecast`` a run's cost before it
starts (``priors`` where there is no history), ``views`` what ``stageflow profiles`` shows.
"""
