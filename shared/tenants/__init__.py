"""The tenant registry's features: onboarding (invitations, sign-in, consent
decisions), administration, notices to ops."""
