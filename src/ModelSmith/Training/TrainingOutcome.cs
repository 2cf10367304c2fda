namespace ModelSmith.Training;

/// <summary>
/// What a training command produced, as the model registry records it: the output model, what kind of model it is,
/// the model it was derived from, the transform and its parameters, and the fingerprint of the data it was trained on.
/// </summary>
/// <param name="OutputPath">The model file written (absolute path).</param>
/// <param name="Kind"><c>base</c> for a pretrained model, <c>finetuned</c> for a fine-tuned one.</param>
/// <param name="ParentPath">The model it was trained from (absolute path), or null for a model pretrained from scratch.</param>
/// <param name="Transform"><c>pretrain</c>, <c>finetune-full</c> or <c>finetune-lora</c>.</param>
/// <param name="Parameters">The settings that made it, by option name (steps, lr, rank ...), as text.</param>
/// <param name="DataFingerprint"><see cref="Data.TrainingData.Fingerprint"/> of the training data.</param>
/// <param name="AdapterPath">The GGUF LoRA adapter written beside it, or null.</param>
public sealed record TrainingOutcome(string OutputPath, string Kind, string? ParentPath, string Transform,
    IReadOnlyDictionary<string, string> Parameters, string DataFingerprint, string? AdapterPath = null);
