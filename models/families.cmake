# The families of torchae, one entry per module. A module NAME is include/torchae/models/NAME.h
# and models/NAME.cpp, which defines `void register_NAME(Registry&)` (it may register more than
# one family: undercomplete also registers dropout). The build compiles each module, the registry
# calls each register_NAME (through the generated torchae/models/families.inc), and the tests
# cover every family the registry lists, each with its configurations in tests/families/.
set(TORCHAE_FAMILIES
  undercomplete
  sparse
  ksparse
  denoising
  contractive
  vae
  wae
  rbm
  dbm
  stacked
)
