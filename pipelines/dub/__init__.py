"""Dubbing: a video + new speech -> an mp4 at the input's size and frame rate with a new mouth.

``dub_video`` is the one library entry point (the CLI, the batch runner and the registry's
pyfunc call it); ``run_dub`` adds the CLI's single-or-batch dispatch.
"""
