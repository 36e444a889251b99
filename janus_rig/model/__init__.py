"""janus_rig/model"""
