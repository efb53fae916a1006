"""Referrals: a participant's code brings a referee; when the referee does the program's
completion action (or it is completed by hand), both sides are paid once.

- `program`: the tenant environment's settings, and the fragment the everyday write asks
  them with;
- `decisions`: the rules, pure (tracking refusals, codes, what completes and pays);
- `codes`: a participant's code, made on first ask;
- `tracking`, `completion`: the two writes, run by the workers (`kinds`);
- `expiry`: the periodic sweep that stores the status of referrals past their expiry;
- `reads`: a referrer's referrals and totals.
"""
