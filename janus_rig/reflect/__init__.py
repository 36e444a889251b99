"""Reflection inside the one model (RL-RIG's Generate-Reflect-Edit): the loop, its settings and actors, the roles'
contexts, rewards, probes and reports. The roles' text formats live with the chain's (janus_rig/chain/roles.py): the
tokenizer is built from them.

    from janus_rig.reflect.loop import ReflectConfig, reflect     # generate -> check -> act -> edit, K rounds
"""
