from django.db import migrations, models


def mark_imported_answers(apps, schema_editor):  # type: ignore[no-untyped-def]
    """Answers made by import_scores said so in their request ({"imported_from": FILE})."""
    generation = apps.get_model("inference", "Generation")
    generation.objects.filter(request__has_key="imported_from").update(source="imported")


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0005_identity_leaks"),
    ]

    operations = [
        migrations.AddField(
            model_name="generation",
            name="source",
            field=models.CharField(
                choices=[("generated", "generated"), ("imported", "imported")],
                default="generated",
                help_text="Imported answers came from a file and are never sent to a model.",
                max_length=16,
            ),
        ),
        migrations.RunPython(mark_imported_answers, migrations.RunPython.noop),
    ]
