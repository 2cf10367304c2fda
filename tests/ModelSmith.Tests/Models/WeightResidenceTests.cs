using ModelSmith.Models;

namespace ModelSmith.Tests.Models;

public class WeightResidenceTests
{
    [Fact]
    public void Weights_copied_into_memory_give_the_same_logits_as_mapped_weights()
    {
        int[] tokens = [1, 300, 41, 7, 499, 12, 256, 3];
        float[] Run(WeightResidence residence)
        {
            using LanguageModel model = LanguageModel.Load(RepoPaths.Stories260K, threads: 2, residence);
            Assert.Equal(residence, model.Residence);
            var logits = new float[tokens.Length * model.Config.VocabSize];
            model.Forward(tokens, model.CreateCache(16), logits, allLogits: true);
            return logits;
        }
        Assert.Equal(Run(WeightResidence.Mapped), Run(WeightResidence.Memory));
    }
}
