"""Environments and what runs in them: releases, deployments, promotion, previews."""
