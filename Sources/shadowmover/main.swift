import ShadowMoverCLI

ShadowMover.runMain()
