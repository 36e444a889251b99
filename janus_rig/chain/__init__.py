"""janus_rig/chain"""
