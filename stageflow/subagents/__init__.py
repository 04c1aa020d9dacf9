"""Runners that perform stage attempts: offline (scripted), command stages, and model runners."""
