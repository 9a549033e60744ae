"""costoperator: the llm-cost-operator's command line and Kubernetes operator."""

__version__ = "0.1.0"
