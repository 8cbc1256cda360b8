"""Chats as the model reads them: its chat template, and fallbacks for models without one."""
