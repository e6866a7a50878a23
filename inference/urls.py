from django.urls import path

from . import views

urlpatterns = [
    path("items/", views.items, name="items"),
    path("items/import/", views.import_items, name="import-items"),
    path("items/<str:public_id>/", views.item_detail, name="item"),
    path("images/<str:public_id>/", views.image, name="image"),
    path("images/<str:public_id>/<str:variant>/", views.image, name="image-variant"),
]
