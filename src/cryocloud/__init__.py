"""cryocloud: run cryo-EM processing jobs where they fit, priced before and accounted after."""

__version__ = "0.1.0"
