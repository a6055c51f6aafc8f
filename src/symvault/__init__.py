"""symvault: a debug information file store and native symbolication service."""
