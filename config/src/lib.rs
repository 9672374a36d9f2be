//! Typed configuration: defaults, file, environment, flags and the EKS add-on JSON.
