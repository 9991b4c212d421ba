"""Examples for plugin authors: the "Writing a node" guide (README.md) and an example plugin to copy into
`<data>/custom_nodes/`. Nothing here is registered unless copied there."""
