//! L3: the memory-mapped disk tier (see DESIGN.md "L3").
