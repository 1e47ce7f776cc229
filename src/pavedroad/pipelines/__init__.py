"""CI/CD pipelines: `.pavedroad/pipeline.yaml` files modelled on GitHub Actions workflows."""
