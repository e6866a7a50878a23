from django.db import migrations, models


def mark_placeholders(apps, schema_editor):  # type: ignore[no-untyped-def]
    """Every imported answer so far came from import_scores: a placeholder without text."""
    Generation = apps.get_model("inference", "Generation")
    Generation.objects.filter(source="imported").update(placeholder=True)


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0007_timing_quality_and_record"),
    ]

    operations = [
        migrations.AddField(
            model_name="generation",
            name="placeholder",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "A stand-in for an answer scored elsewhere (import_scores): no text, "
                    "never reviewed."
                ),
            ),
        ),
        migrations.AlterField(
            model_name="modelendpoint",
            name="base_url",
            field=models.URLField(blank=True, max_length=500),
        ),
        migrations.RunPython(mark_placeholders, migrations.RunPython.noop),
    ]
