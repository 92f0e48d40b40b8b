#pragma once

// Registration hooks of the built-in families, called by Registry::builtin(). Each lives
// next to its family in models/<family>.cpp.

namespace torchae {

class Registry;

void register_undercomplete(Registry& registry);

}  // namespace torchae
