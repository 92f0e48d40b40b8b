#pragma once

#include <stdexcept>
#include <string>

namespace torchae {

/// An error a user can cause (bad configuration, unreadable data, a diverged run). The
/// command line prints its message as one line and exits non-zero; it is never an assert.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace torchae
