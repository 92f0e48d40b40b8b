#pragma once

// Registration hooks of the built-in families, called by Registry::builtin(). Each lives
// next to its family in models/<family>.cpp.

namespace torchae {

class Registry;

void register_undercomplete(Registry& registry);  // also registers "dropout"
void register_sparse(Registry& registry);
void register_ksparse(Registry& registry);
void register_denoising(Registry& registry);
void register_contractive(Registry& registry);
void register_vae(Registry& registry);
void register_wae(Registry& registry);
void register_stacked(Registry& registry);

}  // namespace torchae
