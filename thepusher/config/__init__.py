"""The master's configuration: HCL text -> checked model (hcl, schema, load, model, describe)."""
