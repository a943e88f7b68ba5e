//! The simulated Proxmox node (to be written).
