"""loft runtime: executes a compiled bundle. Reads only `plan.lock`; never imports the compiler."""
