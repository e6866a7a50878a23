from django.urls import path

from . import views

urlpatterns = [
    path("items/", views.items, name="items"),
    path("items/import/", views.import_items, name="import-items"),
    path("items/<str:public_id>/", views.item_detail, name="item"),
    path("campaigns/", views.campaigns, name="campaigns"),
    path("campaigns/import/", views.import_answers, name="import-answers"),
    path("campaigns/<str:public_id>/", views.campaign_run, name="campaign-run"),
    path("generations/<str:public_id>/", views.generation_detail, name="generation"),
    path("images/<str:public_id>/", views.image, name="image"),
    path("images/<str:public_id>/<str:variant>/", views.image, name="image-variant"),
]
