"""Integrations with libraries a program may use, side by side, one module each.

Each is imported only when the program imports its library (see INTEGRATIONS in
_activation.py) and has the same small interface: `install(module, active)`, called once
with the library's module right after its import, inside the one guard of the import hook.
"""
