"""The train stage: transformers Trainer + PEFT (+ DeepSpeed / accelerate) driven by plan.lock."""
